# Two commands on a fresh machine: `make run` (light install + detection on the sample
# image) and `make test` (full install with training extras + the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench mcu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/openmtcnn detect openmtcnn/assets/astronaut.png --out out

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_latency.py --backends onnx,ncnn --out runs/bench.json

# The int8 C detector for a Cortex-M4 (1 MB flash, 128 KB RAM) at a 160x120 camera: export, cross-compile,
# print arm-none-eabi-size and the worst stack depth. MCU_WEIGHTS: weight set; MCU_CALIB: calibration photos.
MCU_WEIGHTS ?= mcu
MCU_OUT ?= runs/mcu
MCU_CALIB ?= $(wildcard ../shared/data/widerface/WIDER_train/images)
mcu: $(VENV)/.dev
	command -v arm-none-eabi-gcc >/dev/null 2>&1 || (apt-get update && apt-get install -y gcc-arm-none-eabi)
	$(BIN)/openmtcnn export c --variant mcu --weights $(MCU_WEIGHTS) --out $(MCU_OUT) --input 160x120 \
		--target cortex-m4 $(if $(MCU_CALIB),--calib $(MCU_CALIB))
	$(MAKE) -C $(MCU_OUT) mcu
	$(BIN)/python benchmarks/mcu_size.py $(MCU_OUT) --no-build

clean:
	rm -rf $(VENV) out runs build *.egg-info
