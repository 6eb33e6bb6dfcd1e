"""Chats through a client that openapi-python-client generated from /openapi.json.

Run by tests/docs_and_metrics.rs: python generated_client.py <base url> (with the generated
package on PYTHONPATH). Every call goes through the generated functions and models, with
`raise_on_unexpected_status`, so a status the document leaves out fails here too.
"""
import sys
import uuid

from ferrochat_client import AuthenticatedClient, Client
from ferrochat_client.api.auth import me, register
from ferrochat_client.api.chat import create_room, post_room_message, room_messages
from ferrochat_client.api.legacy import get_transcript, post_message
from ferrochat_client.api.webchat import history
from ferrochat_client.models import (
    Credentials,
    ErrorBody,
    LegacyPost,
    LegacyTranscript,
    MessageOut,
    NewMessageIn,
    RoomIn,
    RoomOut,
)
from ferrochat_client.models.get_transcript_format import GetTranscriptFormat

base = sys.argv[1]
anyone = Client(base_url=base, raise_on_unexpected_status=True)
name = "gen" + uuid.uuid4().hex[:8]

signed = register.sync(client=anyone, body=Credentials(username=name, password="correct horse"))
assert signed is not None and signed.username == name, signed
user = AuthenticatedClient(base_url=base, token=signed.token, raise_on_unexpected_status=True)
who = me.sync(client=user)
assert who.user_id == signed.user_id, who

room_id = "r" + uuid.uuid4().hex[:8]
room = create_room.sync(client=user, body=RoomIn(name=room_id))
assert isinstance(room, RoomOut), room
taken = create_room.sync_detailed(client=user, body=RoomIn(name=room_id))
assert taken.status_code == 409 and isinstance(taken.parsed, ErrorBody), taken

sent = post_room_message.sync(room.id, client=user, body=NewMessageIn(content="from a generated client"))
assert isinstance(sent, MessageOut) and sent.username == name, sent
page = room_messages.sync(room.id, client=user, limit=10)
assert [m.content for m in page] == ["from a generated client"], page

status = post_message.sync_detailed(room.id, client=user, body=LegacyPost(msg="and a legacy post"))
assert status.status_code == 204, status
transcript = get_transcript.sync(room.id, client=user, format_=GetTranscriptFormat.JSON)
assert isinstance(transcript, LegacyTranscript), transcript
assert [m.text for m in transcript.messages] == ["from a generated client", "and a legacy post"]
assert transcript.last_id == transcript.messages[-1].id

bad = room_messages.sync_detailed(room.id, client=user, limit=0)
assert bad.status_code == 400 and isinstance(bad.parsed, ErrorBody), bad

recent = history.sync(client=user, minutes=5)
assert recent is not None and isinstance(recent.messages, list), recent
print("ok")
