# The two commands a newcomer needs: `make demo` and `make test`. Both run the idempotent setup first.
PY := .venv/bin/python
# ROS 2 Jazzy (LTS) wheels in a second environment: `make test` runs the DDS tests (marker ros) there as well.
JAZZY_PY := .venv-jazzy/bin/python
JAZZY_TESTS := -m "ros and not colcon"
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA

.PHONY: setup setup-jazzy demo test test-jazzy test-fast bench clean

setup:
	@bash scripts/setup.sh

# With a sourced ROS 2 (ROS_DISTRO set) that release is the one tested; the wheels are for machines without one.
setup-jazzy:
	@if [ -z "$$ROS_DISTRO" ]; then ROS_WHEELS=jazzy bash scripts/setup.sh; fi

demo: setup
	$(PY) -m surround_depth_ros.demo --out outputs/demo

test: setup setup-jazzy
	$(PY) -m pytest -q
	@$(MAKE) --no-print-directory test-jazzy

test-jazzy: setup-jazzy
	@if [ -z "$$ROS_DISTRO" ]; then echo "[test] the DDS tests again on ROS 2 Jazzy wheels ($(JAZZY_PY))"; \
	  $(JAZZY_PY) -m pytest -q $(JAZZY_TESTS) -p no:cacheprovider; fi

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not colcon"

bench: setup
	$(PY) -m surround_depth_train.bench all

clean:
	rm -rf build install log outputs .pytest_cache
