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
