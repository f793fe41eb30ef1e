"""Export an int8 cascade as plain C99: weights as const arrays, a fixed runtime, one static arena.

``export_c`` writes ``mtcnn_model.c/.h`` (generated: int8 weights, int32 biases, requantisation
multipliers and shifts, settings, the arena layout), copies the runtime (``mtcnn.c/.h``), a host
driver (``main.c``: PPM in, detections out), a Cortex-M4 stub (``mcu_main.c``) and a Makefile,
and keeps the integer model (``mtcnn_int8.npz``) that the Python reference runs bit for bit.

The arena is laid out here for the largest frame (``width`` x ``height``); the C code checks at
compile time that arena + frame + a stack reserve fit the RAM budget.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from openmtcnn.compress.int8 import ACT_ZERO, QLayer, QNet, pooled_size
from openmtcnn.compress.int8_cascade import Int8MTCNN, pyramid
from openmtcnn.fileio import atomic_write_bytes

RUNTIME = Path(__file__).resolve().parent / "c"
RUNTIME_FILES = ("mtcnn.c", "mtcnn.h", "main.c", "mcu_main.c")
CAND_BYTES = 40  # cand_t in mtcnn.c: box[4], key, seq, aux[4] (int32 each)
TARGETS = {"host": None, "cortex-m4": 128 * 1024}  # RAM budget in bytes (host: none)
FLASH_BUDGET = 1024 * 1024
STACK_RESERVE = 2048  # bytes kept for the stack in the RAM check (measured use: see make mcu)


def align(n: int, to: int = 4) -> int:
    return -(-n // to) * to


def check_nets(cascade: Int8MTCNN) -> None:
    """The runtime streams P-Net as conv + max-pool 2/2, conv, conv; R-Net and O-Net are generic."""
    p = cascade.nets["pnet"].layers
    if len(p) != 3 or p[0].pool != (2, 2) or p[1].pool or p[2].pool or any(layer.fc for layer in p):
        raise ValueError("P-Net must be conv + max-pool 2x2, conv, conv (the MTCNN P-Net) for the C runtime")
    for stage, outputs in (("pnet", 5), ("rnet", 5), ("onet", 15)):
        if cascade.nets[stage].head.cout != outputs:
            raise ValueError(f"{stage}: expected {outputs} head outputs, got {cascade.nets[stage].head.cout}")


def net_buffers(net: QNet) -> tuple[int, int, int]:
    """Bytes of the two ping-pong activation buffers and the pooling ring of an R- or O-Net."""
    h = w = net.input_size
    sizes, ring = [0, 0], 0
    for i, layer in enumerate(net.layers):
        if layer.fc:
            h = w = 1
            out = layer.cout
        else:
            h, w = h - layer.k + 1, w - layer.k + 1
            if layer.pool:
                ring = max(ring, layer.pool[0] * w * layer.cout)
                h, w = pooled_size(h, *layer.pool), pooled_size(w, *layer.pool)
            out = h * w * layer.cout
        sizes[i % 2] = max(sizes[i % 2], out)
    return sizes[0], sizes[1], ring


def arena_layout(cascade: Int8MTCNN, width: int, height: int) -> dict[str, tuple[int, int]]:
    """{buffer: (offset, bytes)} of the C arena for frames up to width x height; "total" at the end.

    Candidates and landmarks live throughout; P-Net's streaming rows and the R-/O-Net buffers
    are never needed at once and share the rest.
    """
    cfg, p = cascade.config, cascade.nets["pnet"].layers
    levels = pyramid(width, height, cfg)
    if not levels:
        raise ValueError(f"a {width}x{height} frame is smaller than the smallest face ({cfg.min_face_size} px)")
    lw = levels[0][1]
    k1, k2, k3 = (layer.k for layer in p)
    wc1 = lw - k1 + 1
    wp = pooled_size(wc1, 2, 2)
    w2 = wp - k2 + 1
    wo = w2 - k3 + 1
    always = {"proposals": cfg.proposal_cap * CAND_BYTES, "landmarks": cfg.onet_cap * 10 * 4}
    pnet = {"p_cands": cfg.level_cap * CAND_BYTES, "p_level": (k1 + 1) * lw * 3, "p_conv1": 2 * wc1 * p[0].cout,
            "p_pool": k2 * wp * p[0].cout, "p_conv2": k3 * w2 * p[1].cout, "p_conv3": wo * p[2].cout}
    bufs = [net_buffers(cascade.nets[s]) for s in ("rnet", "onet")]
    crops = {"crop": max(cascade.nets[s].input_size ** 2 * 3 for s in ("rnet", "onet")),
             "act_a": max(b[0] for b in bufs), "act_b": max(b[1] for b in bufs), "ring": max(b[2] for b in bufs)}
    layout, offset = {}, 0
    for name, size in always.items():
        layout[name], offset = (offset, size), offset + align(size)
    shared = offset
    for group in (pnet, crops):
        offset = shared
        for name, size in group.items():
            layout[name], offset = (offset, size), offset + align(size)
        layout["total"] = (0, max(layout.get("total", (0, 0))[1], offset))
    layout["level0_w"] = (0, lw)
    return layout


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    flat = [str(int(v)) for v in np.asarray(values).ravel()]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def c_layer(prefix: str, layer: QLayer) -> tuple[str, str]:
    """(arrays, initializer) of one layer."""
    arrays = "".join([c_array("int8_t", f"{prefix}_w", layer.weight), c_array("int32_t", f"{prefix}_b", layer.bias),
                      c_array("int32_t", f"{prefix}_m", layer.mult), c_array("int8_t", f"{prefix}_s", layer.shift)])
    pk, ps = layer.pool or (0, 0)
    cin = layer.weight[0].size if layer.fc or layer.head else layer.cin
    init = (f"{{{prefix}_w, {prefix}_b, {prefix}_m, {prefix}_s, {cin}, {layer.cout}, {1 if layer.fc or layer.head else layer.k}"
            f", {pk}, {ps}, {int(layer.fc)}}}")
    return arrays, init


def model_source(cascade: Int8MTCNN) -> str:
    parts = ['/* Generated by openmtcnn export c: the int8 nets. */\n#include "mtcnn_model.h"\n']
    for stage in ("pnet", "rnet", "onet"):
        net = cascade.nets[stage]
        inits = []
        for i, layer in enumerate(net.layers):
            arrays, init = c_layer(f"{stage}_{i}", layer)
            parts.append(arrays)
            inits.append(init)
        arrays, head = c_layer(f"{stage}_head", net.head)
        parts.append(arrays)
        parts.append(f"static const mtcnn_layer_t {stage}_layers[{len(inits)}] = {{\n    " + ",\n    ".join(inits)
                     + "\n};\n")
        parts.append(f"const mtcnn_net_t mtcnn_model_{stage} = {{{stage}_layers, {len(inits)}, {net.input_size}, {head}}};\n")
    return "\n".join(parts)


def model_header(cascade: Int8MTCNN, width: int, height: int, layout: dict, ram_budget: int | None,
                 description: str) -> str:
    cfg = cascade.config
    t_p, t_r, t_o = cfg.logit_thresholds
    n0, n1, n2, n3 = cfg.nms_q10
    max_k = max([2] + [max(layer.k, (layer.pool or (0, 0))[0]) for s in ("pnet", "rnet", "onet")
                       for layer in cascade.nets[s].layers])
    offsets = "\n".join(f"#define MTCNN_OFF_{name.upper()} {off} /* {size} bytes */"
                        for name, (off, size) in layout.items() if name not in ("total", "level0_w"))
    budget = ram_budget if ram_budget is not None else (
        "(MTCNN_ARENA_BYTES + MTCNN_FRAME_BYTES + MTCNN_STACK_RESERVE) /* host: no budget */")
    return f"""/* Generated by openmtcnn export c: {description}. */
#ifndef MTCNN_MODEL_H
#define MTCNN_MODEL_H

#include <stdint.h>

/* Frames up to this size (RGB, 3 bytes a pixel); the arena below is sized for it. */
#define MTCNN_MAX_W {width}
#define MTCNN_MAX_H {height}
#define MTCNN_FRAME_BYTES ({width} * {height} * 3)
#define MTCNN_LEVEL0_W {layout["level0_w"][1]} /* width of the largest pyramid level */

/* Settings: min face {cfg.min_face_size:g} px, pyramid factor {cfg.scale_factor:g},
 * face probability thresholds {" / ".join(f"{t:g}" for t in cfg.thresholds)},
 * NMS overlaps {" / ".join(f"{t:g}" for t in cfg.nms_thresholds)} (the last over the smaller box). */
#define MTCNN_SCALE0_Q16 {cfg.scale0_q16} /* 12 / min face, in 1/65536 */
#define MTCNN_FACTOR_Q16 {cfg.factor_q16}
#define MTCNN_THRESHOLD_P {t_p} /* face logit in 1/4096 */
#define MTCNN_THRESHOLD_R {t_r}
#define MTCNN_THRESHOLD_O {t_o}
#define MTCNN_NMS_LEVEL_Q10 {n0} /* overlap in 1/1024 */
#define MTCNN_NMS_PYRAMID_Q10 {n1}
#define MTCNN_NMS_RNET_Q10 {n2}
#define MTCNN_NMS_FINAL_Q10 {n3}

/* Candidate caps: the best-scored boxes are kept. */
#define MTCNN_LEVEL_CAP {cfg.level_cap} /* P-Net windows per pyramid level */
#define MTCNN_PROPOSAL_CAP {cfg.proposal_cap} /* P-Net boxes over all levels */
#define MTCNN_RNET_CAP {cfg.rnet_cap} /* R-Net crops per frame */
#define MTCNN_ONET_CAP {cfg.onet_cap} /* O-Net crops per frame */

#define MTCNN_ACT_ZERO ({ACT_ZERO}) /* zero point of int8 activations */
#define MTCNN_MAX_K {max_k}
#define MTCNN_PNET_OUT 5
#define MTCNN_RNET_OUT 5
#define MTCNN_ONET_OUT 15

/* The arena: one static buffer, laid out by the generator. */
#define MTCNN_ARENA_BYTES {layout["total"][1]}
#define MTCNN_CAND_BYTES {CAND_BYTES}
{offsets}

#ifndef MTCNN_STACK_RESERVE
#define MTCNN_STACK_RESERVE {STACK_RESERVE}
#endif
#ifndef MTCNN_RAM_BUDGET
#define MTCNN_RAM_BUDGET {budget}
#endif

typedef struct {{
    const int8_t *w;      /* cout x k x k x cin, channels last (fully connected: cout x inputs) */
    const int32_t *bias;  /* input zero points folded in */
    const int32_t *mult;  /* requantisation: (acc * mult + 2^(shift - 1)) >> shift */
    const int8_t *shift;
    uint16_t cin, cout;
    uint8_t k, pool_k, pool_s, fc;
}} mtcnn_layer_t;

typedef struct {{
    const mtcnn_layer_t *layers; /* body: conv + ReLU (+ max-pool), fully connected + ReLU */
    uint8_t n_layers, size;      /* input size (square crops; P-Net: any) */
    mtcnn_layer_t head;          /* face logit, box offsets (, landmarks) in 1/4096 */
}} mtcnn_net_t;

extern const mtcnn_net_t mtcnn_model_pnet, mtcnn_model_rnet, mtcnn_model_onet;

#endif
"""


def makefile(target: str) -> str:
    return f"""# Build the exported detector: `make host` (this machine) or `make mcu` (Cortex-M4, arm-none-eabi-gcc).
CC ?= cc
CFLAGS ?= -std=c99 -Wall -Wextra -Werror -O2
ARM ?= arm-none-eabi-
MCU_ARCH = -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
MCU_CFLAGS = $(MCU_ARCH) -Os -ffunction-sections -fdata-sections -std=c99 -Wall -Wextra -Werror \\
	-fstack-usage -fcallgraph-info=su
SRC = mtcnn.c mtcnn_model.c

.PHONY: default host mcu clean
default: {"mcu" if target == "cortex-m4" else "host"}
host: mtcnn_host

mtcnn_host: $(SRC) main.c mtcnn.h mtcnn_model.h
	$(CC) $(CFLAGS) -o $@ $(SRC) main.c

mcu: build/mtcnn.elf
	$(ARM)size build/mtcnn.elf

build/%.o: %.c mtcnn.h mtcnn_model.h
	@mkdir -p build
	$(ARM)gcc $(MCU_CFLAGS) -c $< -o $@

build/mtcnn.elf: build/mtcnn.o build/mtcnn_model.o build/mcu_main.o
	$(ARM)gcc $(MCU_ARCH) --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections -Wl,-Map=build/mtcnn.map -o $@ $^

clean:
	rm -rf build mtcnn_host
"""


def export_c(cascade: Int8MTCNN, out_dir: str | os.PathLike, width: int, height: int, target: str = "host",
             info: dict | None = None) -> dict:
    """Write the C sources for frames up to width x height; returns a summary (bytes, arena layout)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    check_nets(cascade)
    out = Path(out_dir)
    layout = arena_layout(cascade, width, height)
    budget = TARGETS[target]
    arena, frame = layout["total"][1], width * height * 3
    ram = arena + frame + STACK_RESERVE
    if budget is not None and ram > budget:
        raise ValueError(f"arena {arena} B + frame {frame} B + stack reserve {STACK_RESERVE} B = {ram} B exceeds "
                         f"the {budget} B RAM of a {target}; use a smaller --input or lower caps")
    weights = sum(layer.weight.size + 9 * layer.cout for s in ("pnet", "rnet", "onet")
                  for layer in cascade.nets[s].layers + [cascade.nets[s].head])
    if budget is not None and weights > FLASH_BUDGET:
        raise ValueError(f"the nets take {weights} B of flash, more than {FLASH_BUDGET} B")
    info = dict(info or {})
    description = ", ".join(f"{k} {v}" for k, v in info.items() if isinstance(v, (str, int, float))) or "int8 MTCNN"
    files = {"mtcnn_model.h": model_header(cascade, width, height, layout, budget, description),
             "mtcnn_model.c": model_source(cascade), "Makefile": makefile(target)}
    for name, text in files.items():
        atomic_write_bytes(out / name, text.encode())
    for name in RUNTIME_FILES:
        atomic_write_bytes(out / name, (RUNTIME / name).read_bytes())
    cascade.save(out / "mtcnn_int8.npz")
    summary = {**info, "input": [width, height], "target": target, "arena_bytes": arena, "frame_bytes": frame,
               "stack_reserve": STACK_RESERVE, "ram_bytes": ram, "ram_budget": budget, "weight_bytes": weights,
               "config": asdict(cascade.config), "layout": {k: list(v) for k, v in layout.items()},
               "ranges": {s: cascade.nets[s].ranges for s in ("pnet", "rnet", "onet")}}
    atomic_write_bytes(out / "export.json", (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def build_host(src_dir: str | os.PathLike, out: str | os.PathLike | None = None, cc: str = "gcc") -> Path:
    """Compile the host driver with warnings as errors; returns the executable."""
    import subprocess

    src = Path(src_dir)
    exe = Path(out) if out else src / "mtcnn_host"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-o", str(exe),
           *(str(src / f) for f in ("mtcnn.c", "mtcnn_model.c", "main.c"))]
    if shutil.which(cc) is None:
        raise OSError(f"C compiler {cc!r} not found")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def write_ppm(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """A binary PPM (what the host driver reads)."""
    h, w = rgb.shape[:2]
    return atomic_write_bytes(path, f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(rgb, np.uint8).tobytes())


def parse_detections(text: str) -> dict[str, dict[str, np.ndarray]]:
    """The host driver's output: {image path: {"logits", "scores", "boxes", "landmarks"}} (integers as printed)."""
    results, rows, name = {}, [], None

    def close() -> None:
        if name is not None:
            a = np.array(rows, np.float64).reshape(-1, 16)
            results[name] = {"logits": a[:, 0].astype(np.int64), "scores": a[:, 1], "boxes": a[:, 2:6].astype(np.int64),
                             "landmarks": a[:, 6:16].astype(np.int64).reshape(-1, 5, 2)}

    for line in text.splitlines():
        if line.startswith("image "):
            close()
            name, rows = line[6:].rsplit(" ", 1)[0], []
        elif line.strip():
            rows.append([float(v) for v in line.split()])
    close()
    return results
