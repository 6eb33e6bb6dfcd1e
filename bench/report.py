"""Turns bench/out/*.json into the table of docs/BENCHMARKS.md."""
import json
import pathlib
import platform
import sys

out, connections, duration = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
r = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def row(what, ferro, peer, ceiling=None, ceiling_name=""):
    f, p = r[ferro], r[peer]
    cells = [what, f"{f['rps']:,.0f}", f"{p['rps']:,.0f}", f"**{f['rps'] / p['rps']:,.1f}x**",
             f"{f['p99_ms']:.1f} / {p['p99_ms']:.1f}", f"{f['errors']} / {p['errors']}"]
    if ceiling:
        c = r[ceiling]
        cells.append(f"{ceiling_name} {c['rps']:,.0f}/s: ferrochat at **{100 * f['rps'] / c['rps']:.0f}%**")
    else:
        cells.append("")
    return "| " + " | ".join(cells) + " |"


print(f"{connections} connections, {duration} s per measurement, wrk -t2, on {platform.node()} "
      f"({platform.machine()}), MariaDB on loopback, all in one run.\n")
print("| request | ferrochat req/s | Flask peer req/s | ratio | p99 ms (ferrochat / peer) | errors | ceiling, same run |")
print("|---|---|---|---|---|---|---|")
print(row("GET 100-message room", "ferro_get100", "peer_get100"))
print(row("GET 1000-message room", "ferro_get1000", "peer_get1000", "ceiling_fixed", "fixed 1000 lines"))
print(row("POST a message (204 after commit)", "ferro_post", "peer_post", "ceiling_slap", "mariadb-slap"))
if "ferro_post_redis" in r:
    print(row("POST, replica with the Redis hub (rooms locked per commit)", "ferro_post_redis", "peer_post",
              "ceiling_slap", "mariadb-slap"))

def alternating(title, base, other, rows, left, right):
    """A table of A/B rounds: each round's ratio of `other` to `base`, and their median."""
    rounds = sorted(int(k.rsplit("_", 1)[1]) for k in r if k.startswith(f"{other}_{rows[0][1]}_"))
    if not rounds:
        return
    print(f"\n| {title} | round | {left} req/s, p99 ms | {right} req/s, p99 ms | {right} / {left} |")
    print("|---|---|---|---|---|")
    for what, kind in rows:
        ratios = []
        for n in rounds:
            o, a = r[f"{base}_{kind}_{n}"], r[f"{other}_{kind}_{n}"]
            ratios.append(a["rps"] / o["rps"])
            print(f"| {what} | {n} | {o['rps']:,.0f}, {o['p99_ms']:.1f} | {a['rps']:,.0f}, {a['p99_ms']:.1f} | "
                  f"{100 * ratios[-1]:.0f}% |")
        ratios.sort()
        print(f"| {what} | median | | | **{100 * ratios[len(ratios) // 2]:.0f}%** |")


alternating('auth = "required" (bearer token) against open mode', "ab_open", "ab_auth",
            [("GET 100-message room", "get"), ("POST a message", "post")], "open", "required")
alternating("the front door against none", "door_off", "door_on",
            [("GET 100-message room", "get"), ("GET fixed 1000 lines", "fixed")], "without", "with")

alternating("compressed (Accept-Encoding) against as it is", "zip_off", "zip_br",
            [("GET 1000-message room, brotli", "get1000")], "as it is", "brotli")
alternating("compressed (Accept-Encoding) against as it is", "zip_off", "zip_gzip",
            [("GET 1000-message room, gzip", "gz1000")], "as it is", "gzip")
if "zip_sizes" in r:
    z = r["zip_sizes"]
    print(f"\nThe 1000-message room: {z['plain']:,} bytes as it is, {z['br']:,} with brotli "
          f"({100 * z['br'] / z['plain']:.0f}%).")

alternating("integrations (bench/integrations): posts through an incoming webhook against the form POST",
            "int_plain", "int_hook", [("POST, Slack JSON to /hooks/<id>/<secret>", "hook")], "form POST", "hook")
alternating("integrations: a room with an outgoing webhook (an outbox row in each commit) against one without",
            "int_plain", "int_watched", [("POST a message", "outbox")], "no webhook", "one webhook")
deliv = [r[k] for k in ("int_deliveries_one", "int_deliveries_eight") if k in r]
if deliv:
    print("\n| outgoing webhooks, to nginx answering 204 on loopback | events | seconds | deliveries/s | not delivered |")
    print("|---|---|---|---|---|")
    for d in deliv:
        print(f"| {d['webhooks']} webhook(s), messages posted one after another | {d['deliveries']:,} | "
              f"{d['seconds']:.1f} | **{d['rps']:,.0f}** | {d['errors']} |")

conv = [(what, r[k]) for what, k in (
    ("POST a reply (JSON API), against the POST above", "ferro_reply"),
    ("GET /api/chat/unread, one user in 200 rooms", "ferro_unread200"),
    ("GET /api/search, 1,000,000 messages in 100 rooms, a different word each time", "ferro_search"),
) if k in r]
if conv:
    print("\n| conversations | req/s | p50 ms | p99 ms | errors | against |")
    print("|---|---|---|---|---|---|")
    for what, c in conv:
        against = ""
        if "reply" in what and "ferro_post" in r:
            against = f"plain POST {r['ferro_post']['rps']:,.0f}/s: **{100 * c['rps'] / r['ferro_post']['rps']:.0f}%**"
        if "search" in what:
            against = f"target: p99 under 50 ms: **{'met' if c['p99_ms'] < 50 else 'missed'}**"
        print(f"| {what} | {c['rps']:,.0f} | {c['p50_ms']:.1f} | **{c['p99_ms']:.1f}** | {c['errors']} | {against} |")

hello, c304 = r.get("ceiling_hello"), r.get("ferro_304")
if hello and c304:
    print(f"\n| cheap polling | req/s | p99 ms | against the hello-world route ({hello['rps']:,.0f}/s, p99 {hello['p99_ms']:.1f} ms) |")
    print("|---|---|---|---|")
    print(f"| conditional GET of the 1000-message room, 304 | {c304['rps']:,.0f} | {c304['p99_ms']:.1f} | **{100 * c304['rps'] / hello['rps']:.0f}%** |")
polls = [r[k] for k in ("pollers", "pollers_2") if k in r]
if polls:
    print("\n| pages polling every 1.5 s (If-None-Match) | servers | req/s | p50 ms | p99 ms | max ms | errors | pages not connected | while connecting: p99 / max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in polls:
        print(f"| {p['clients']:,} | {p['servers']} | {p['rps']:,.0f} | {p['p50_ms']:.1f} | **{p['p99_ms']:.1f}** | "
              f"{p['max_ms']:.1f} | {p['errors']} | {p['clients_failed']} | "
              f"{p['connecting_p99_ms']:.0f} / {p['connecting_max_ms']:.0f} |")
rows = [r[k] for k in ("fanout_1000", "fanout_10000") if k in r]
if rows:
    print("\n| WebSocket fan-out, one room | delivered | p50 ms | p99 ms | max ms | server memory per idle socket |")
    print("|---|---|---|---|---|---|")
    for f in rows:
        print(f"| {f['clients']:,} sockets x {f['messages']} messages | {f['delivered']:,} of {f['expected']:,} | "
              f"{f['p50_ms']:.1f} | **{f['p99_ms']:.1f}** | {f['max_ms']:.1f} | **{f['kb_per_connection']:.1f} KB** |")
    if len(rows) == 2:
        small, big = rows
        marginal = (big["rss_idle_kb"] - small["rss_idle_kb"]) / (big["clients"] - small["clients"])
        print(f"\nEach socket past the first {small['clients']:,}: **{marginal:.1f} KB** "
              f"(idle server memory {small['rss_idle_kb'] / 1024:.1f} MB with {small['clients']:,}, "
              f"{big['rss_idle_kb'] / 1024:.1f} MB with {big['clients']:,}).")
