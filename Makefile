# Every target first runs scripts/setup.sh (idempotent: venv, pip packages, iverilog).
PY      := .venv/bin/python
CONFIG  ?= slice_digits.yaml
SAMPLES ?=
SIMS    ?=
ARGS    ?=

.PHONY: setup sim test fuzz regress mutate formal train build table5 report datasheet clean

setup:
	@bash scripts/setup.sh

## The main job: train (if needed) -> export -> golden -> Verilog -> co-simulation on both simulators.
sim: setup
	$(PY) -m sim.flow --config $(CONFIG) $(if $(SAMPLES),--samples $(SAMPLES)) $(if $(SIMS),--simulators $(SIMS)) $(ARGS)

## The test suite: unit tests of every stage and co-simulation on Icarus and Verilator.
test: setup
	$(PY) -m pytest -q $(ARGS)

## The long bad-input run: the Hypothesis fuzz suite at 40x its make-test size (2,724 cases
## over every CLI) and 20 random interrupts of each writer (export, build, train); about 6 min.
fuzz: setup
	@mkdir -p build && rm -f build/fuzz_summary.txt
	SPQUANT_FUZZ=long SPQUANT_FUZZ_SUMMARY=build/fuzz_summary.txt SPQUANT_INTERRUPT_TRIALS=20 \
		$(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py tests/test_interrupt.py $(ARGS)
	@cat build/fuzz_summary.txt

## Randomized differential regression, golden vs RTL (the long run: CASES=1000).
CASES ?= 100
SIM   ?= verilator
regress: setup
	$(PY) -m sim.regress --simulator $(SIM) --cases $(CASES) --workers 2 $(ARGS)

## Mutation testing of the RTL generator (sim.mutate): MUTANTS edits of hw/, each co-simulated
## against golden on a four-shape subset; killed / simulated and every survivor's argument
## (about 20 min for 64 mutants on 2 cores).
MUTANTS ?= 64
SEED    ?= 1
mutate: setup
	$(PY) -m sim.mutate --mutants $(MUTANTS) --seed $(SEED) --workers 2 $(ARGS)

## Formal properties of the core (hw.formal): Yosys SMT bounded model checking with Boolector,
## both from PyPI; stream and reset checks to DEPTH cycles from any state (1 to 2 min on the slice).
DEPTH ?= 12
formal: setup
	$(PY) -m hw.formal --config $(CONFIG) --depth $(DEPTH) $(ARGS)

train: setup
	$(PY) -m train --config $(CONFIG) $(ARGS)

build: setup
	$(PY) -m hw.build --config $(CONFIG) $(ARGS)

## The paper's Table 5 ladder and Figure 4 membrane-precision sweep on event digits
## (about 22 min on 2 idle cores; ARGS=--quick for a smoke run, ARGS="--epochs N --out DIR").
table5: setup
	$(PY) -m benchmarks.table5 $(ARGS)

## Measured efficiency into docs/RESULTS.md and docs/figures: counts (model = golden = RTL
## counters), skipped work, cycles and lanes, Eq. 31 energy, memory, synthesis and iCE40
## (1 to 1.5 min on the slice; CONFIG=vgg9 ARGS=--no-ice40 about 4 min). It also re-renders
## every stored result (docs/results/*.json: other networks, Table 5, the pruning study).
report:
	@SETUP_ICE40=1 bash scripts/setup.sh
	$(PY) -m reports.efficiency --config $(CONFIG) $(ARGS)

## The datasheet, docs/DATASHEET.md, from measurements: per config (slice, VGG-9 small, VGG-9)
## cycles, inferences/s and latency at fmax, resources, iCE40/ECP5 place and route of the
## small cores, SRAM traffic and energy (45 nm accesses + Eq. 31 at 7 nm); ARGS=--no-pnr skips
## place and route.
datasheet:
	@SETUP_ICE40=1 bash scripts/setup.sh
	$(PY) -m reports.datasheet $(ARGS)

clean:
	rm -rf build runs/*/export sim_build .pytest_cache
