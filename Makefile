# The two commands a newcomer needs: `make demo` and `make test`. Both run the idempotent setup first.
PY := .venv/bin/python
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA

.PHONY: setup demo test test-fast bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m surround_depth_ros.demo --out outputs/demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not colcon"

bench: setup
	$(PY) -m surround_depth_train.bench all

clean:
	rm -rf build install log outputs .pytest_cache
