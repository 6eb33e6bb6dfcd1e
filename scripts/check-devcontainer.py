#!/usr/bin/env python3
"""Checks a devcontainer.json against the Dev Container specification's property types.

The official JSON schema is not published on any package registry this project can
reach, so the types below are written from the specification (containers.dev,
"devcontainer.json reference") for every property the spec defines at the top level
of an image-based configuration. Unknown properties, wrong types and bad enum values
fail the check.
"""
import json
import re
import sys

STR, INT, BOOL, OBJ, LIST = str, int, bool, dict, list


def command(value):
    """Lifecycle commands: a string, an array of strings, or an object of either."""
    if isinstance(value, str):
        return True
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    if isinstance(value, dict):
        return all(command(v) and not isinstance(v, dict) for v in value.values())
    return False


def str_map(value):
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def ports(value):
    return isinstance(value, list) and all(
        (isinstance(p, int) and 0 < p < 65536) or (isinstance(p, str) and re.fullmatch(r"[\w.-]+:\d+|\d+", p))
        for p in value
    )


ON_AUTO_FORWARD = {"notify", "openBrowser", "openBrowserOnce", "openPreview", "silent", "ignore"}
PROTOCOLS = {"http", "https"}


def port_attributes(value):
    if not isinstance(value, dict):
        return False
    for attrs in value.values():
        if not isinstance(attrs, dict):
            return False
        for key, v in attrs.items():
            ok = {
                "label": lambda v: isinstance(v, str),
                "onAutoForward": lambda v: v in ON_AUTO_FORWARD,
                "protocol": lambda v: v in PROTOCOLS,
                "requireLocalPort": lambda v: isinstance(v, bool),
                "elevateIfNeeded": lambda v: isinstance(v, bool),
            }.get(key)
            if ok is None or not ok(v):
                return False
    return True


def features(value):
    return isinstance(value, dict) and all(isinstance(v, (dict, str, bool)) for v in value.values())


PROPERTIES = {
    "name": lambda v: isinstance(v, str),
    "image": lambda v: isinstance(v, str),
    "build": lambda v: isinstance(v, dict),
    "features": features,
    "overrideFeatureInstallOrder": lambda v: isinstance(v, list),
    "forwardPorts": ports,
    "portsAttributes": port_attributes,
    "otherPortsAttributes": lambda v: isinstance(v, dict),
    "appPort": lambda v: isinstance(v, (int, str, list)),
    "containerEnv": str_map,
    "remoteEnv": lambda v: isinstance(v, dict),
    "containerUser": lambda v: isinstance(v, str),
    "remoteUser": lambda v: isinstance(v, str),
    "updateRemoteUserUID": lambda v: isinstance(v, bool),
    "userEnvProbe": lambda v: v in {"none", "interactiveShell", "loginShell", "loginInteractiveShell"},
    "overrideCommand": lambda v: isinstance(v, bool),
    "shutdownAction": lambda v: v in {"none", "stopContainer", "stopCompose"},
    "init": lambda v: isinstance(v, bool),
    "privileged": lambda v: isinstance(v, bool),
    "capAdd": lambda v: isinstance(v, list),
    "securityOpt": lambda v: isinstance(v, list),
    "mounts": lambda v: isinstance(v, list),
    "runArgs": lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
    "workspaceMount": lambda v: isinstance(v, str),
    "workspaceFolder": lambda v: isinstance(v, str),
    "initializeCommand": command,
    "onCreateCommand": command,
    "updateContentCommand": command,
    "postCreateCommand": command,
    "postStartCommand": command,
    "postAttachCommand": command,
    "waitFor": lambda v: v in {"initializeCommand", "onCreateCommand", "updateContentCommand",
                               "postCreateCommand", "postStartCommand", "postAttachCommand"},
    "hostRequirements": lambda v: isinstance(v, dict),
    "customizations": lambda v: isinstance(v, dict),
    "secrets": lambda v: isinstance(v, dict),
    "$schema": lambda v: isinstance(v, str),
}


def strip_jsonc(text):
    """devcontainer.json is JSONC: drop // and /* */ comments outside strings."""
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def main(path):
    with open(path, encoding="utf-8") as f:
        config = json.loads(strip_jsonc(f.read()))
    errors = []
    if not isinstance(config, dict):
        errors.append("top level must be an object")
    else:
        if not ({"image", "build", "dockerFile", "dockerComposeFile"} & config.keys()):
            errors.append("one of image, build, dockerFile or dockerComposeFile is required")
        for key, value in config.items():
            check = PROPERTIES.get(key)
            if check is None:
                errors.append(f"unknown property {key!r}")
            elif not check(value):
                errors.append(f"property {key!r} has an invalid value: {value!r}")
    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{path}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
