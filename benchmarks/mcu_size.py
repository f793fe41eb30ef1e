"""Flash, RAM and stack of the exported detector built for a Cortex-M4 (`make mcu` runs this).

Builds DIR (the output of `openmtcnn export c --target cortex-m4`) with arm-none-eabi-gcc unless
--no-build, prints `arm-none-eabi-size`, and estimates the worst stack depth from the entry point:
frame sizes from -fstack-usage (.su) for the detector's functions and from the prologues in the
disassembly for library code (libgcc division helpers, C start-up), along the call graph of the
linked program (no recursion, no calls through pointers in the detector).

    python benchmarks/mcu_size.py runs/mcu --json runs/mcu/size.json
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

FLASH, RAM = 1024 * 1024, 128 * 1024
ARM = "arm-none-eabi-"
REG_RANGE = re.compile(r"([rsd])(\d+)-[rsd]?(\d+)")


def run(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def count_regs(text: str) -> tuple[int, int]:
    """(core registers, bytes of FP registers) in a register list like {r4, r5, lr} or {d8-d9}."""
    core = fp = 0
    for item in (t.strip() for t in text.strip("{} ").split(",")):
        m = REG_RANGE.fullmatch(item)
        n = int(m.group(3)) - int(m.group(2)) + 1 if m else 1
        kind = (m.group(1) if m else item[:1])
        if kind == "d":
            fp += 8 * n
        elif kind == "s":
            fp += 4 * n
        else:
            core += n
    return core, fp


def disassembly(elf: Path) -> dict[str, dict]:
    """Per function of the linked program: bytes it moves sp down by, and the functions it calls."""
    funcs: dict[str, dict] = {}
    cur, name = None, None
    for line in run([f"{ARM}objdump", "-d", "--no-show-raw-insn", str(elf)]).splitlines():
        head = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if head:
            name = head.group(1)
            cur = funcs.setdefault(name, {"frame": 0, "calls": set()})
            continue
        if cur is None or "\t" not in line:
            continue
        ins = line.split("\t", 1)[1].strip()
        op, args = (ins.split(None, 1) + [""])[:2]
        args = args.split(";")[0].split("@")[0].strip()
        if op in ("push", "push.w", "vpush") or (op.startswith("stmdb") and args.startswith("sp!")):
            core, fp = count_regs(args[args.index("{"):args.index("}") + 1])
            cur["frame"] += 4 * core + fp
        elif re.match(r"sub(\.w)?$|subw$", op) and re.match(r"sp, (sp, )?#\d+", args):
            cur["frame"] += int(args.rsplit("#", 1)[1])
        elif op.startswith("str") and re.search(r"\[sp, #-(\d+)\]!", args):
            cur["frame"] += int(re.search(r"\[sp, #-(\d+)\]!", args).group(1))
        callee = re.search(r"<([^>+]+)>$", args)
        if callee and callee.group(1) != name and op in ("bl", "blx", "b", "b.w", "b.n"):
            cur["calls"].add(callee.group(1))  # a branch to another function's start: a tail call
    return funcs


def stack_usage(build: Path) -> dict[str, int]:
    """Static frame sizes from the .su files of the detector's objects (function -> bytes)."""
    frames = {}
    for su in build.glob("*.su"):
        for line in su.read_text().splitlines():
            where, size, kind = line.split("\t")
            frames[where.rsplit(":", 1)[-1]] = int(size) if kind.startswith("static") else int(size) + 10**6
    return frames


def worst_stack(elf: Path, build: Path, entry: str) -> tuple[int, list[tuple[str, int, str]]]:
    """Deepest stack from ``entry``: bytes and the path (function, frame, where the frame came from)."""
    funcs, su = disassembly(elf), stack_usage(build)

    def frame(name: str) -> tuple[int, str]:
        if name in su:
            return su[name], "su"
        return funcs.get(name, {"frame": 0})["frame"], "disassembly"

    @cache
    def deepest(name: str, depth: int = 0) -> tuple[int, tuple]:
        own, src = frame(name)
        if depth > 64:
            raise RuntimeError(f"call chain through {name} too deep (recursion?)")
        best = (0, ())
        for callee in sorted(funcs.get(name, {"calls": ()})["calls"]):
            if callee != name:
                best = max(best, deepest(callee, depth + 1), key=lambda t: t[0])
        return own + best[0], ((name, own, src),) + best[1]

    total, path = deepest(entry)
    return total, list(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="exported C folder (openmtcnn export c --target cortex-m4)")
    ap.add_argument("--no-build", action="store_true", help="use the existing build/mtcnn.elf")
    ap.add_argument("--json", help="write the figures here (default DIR/mcu_size.json)")
    args = ap.parse_args()
    src = Path(args.dir)
    if not args.no_build:
        subprocess.run(["make", "-s", "-C", str(src), "mcu"], check=True, stdout=subprocess.DEVNULL)
    elf, build = src / "build" / "mtcnn.elf", src / "build"
    berkeley = run([f"{ARM}size", str(elf)])
    print(berkeley.rstrip())
    text, data, bss = (int(v) for v in berkeley.splitlines()[1].split()[:3])
    sections = {}
    for line in run([f"{ARM}size", "-A", str(elf)]).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    funcs = disassembly(elf)
    entry = next((e for e in ("_mainCRTStartup", "_start", "Reset_Handler") if e in funcs), "main")
    stack, path = worst_stack(elf, build, entry)
    detect_stack, _ = worst_stack(elf, build, "mtcnn_detect")
    export = json.loads((src / "export.json").read_text()) if (src / "export.json").is_file() else {}
    flash, ram = text + data, data + bss + stack
    report = {"elf": str(elf), "text": text, "data": data, "bss": bss, "sections": sections,
              "flash_bytes": flash, "ram_static_bytes": data + bss, "stack_bytes": stack,
              "stack_mtcnn_detect_bytes": detect_stack, "ram_bytes": ram, "stack_path": path,
              "arena_bytes": export.get("arena_bytes"), "frame_bytes": export.get("frame_bytes"),
              "weight_bytes": export.get("weight_bytes"), "input": export.get("input"), "weights": export.get("weights"),
              "flash_budget": FLASH, "ram_budget": RAM, "fits": flash <= FLASH and ram <= RAM}
    print(f"stack: {stack} B worst path from {entry} ({' > '.join(f'{n} {b}' for n, b, _ in path)}); "
          f"mtcnn_detect alone {detect_stack} B")
    print(f"flash (text + data) {flash} B = {flash / 1024:.1f} KB of {FLASH // 1024} KB; "
          f"RAM (data + bss + stack) {ram} B = {ram / 1024:.1f} KB of {RAM // 1024} KB "
          f"(arena {report['arena_bytes']} B, frame {report['frame_bytes']} B)")
    out = Path(args.json) if args.json else src / "mcu_size.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if report["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
