# The two entry points the README names. Both install what they need first.
SHARED ?= ../shared

.PHONY: setup build test demo

setup:
	@./scripts/setup.sh

build: setup
	swift build -c release

# The whole test suite, in release mode (numeric tests on real checkpoints need optimized code), tests
# side by side: no GEMM's result depends on what else runs (OpenBLAS stays on one thread; BLAS.gemm cuts
# C by shape alone), so the bit-identity checks hold under any concurrency.
# Two checks run first, each naming file:line for every finding: scripts/check_doc_paths.sh (no absolute
# path of a machine in README, Makefile, docs/, scripts/) and scripts/check_tests.py (the suite's own rules:
# no machine path, no @Test without an assertion, no skip on missing files, no NaN-skipping error fold).
test: setup
	@./scripts/check_doc_paths.sh
	python3 scripts/check_tests.py
	swift test -c release

# The main job on the embedded default: prune stories260K with Wanda++ at 2:4 (calibrated on 128 x 512 tokens of
# WikiText-2 validation), evaluate it on WikiText-2 test, and write the pruned checkpoint to out/demo.
demo: build
	rm -rf out/demo
	.build/release/llm-prune prune --model $(SHARED)/models/stories260K --method wanda++ --sparsity 2:4 \
	  --calibration-file $(SHARED)/text/wikitext-2/wiki.valid.tokens --calibration-format text \
	  --nsamples 128 --seqlen 512 \
	  --eval-dataset wikitext2 --eval-file $(SHARED)/text/wikitext-2-raw/wiki.test.raw \
	  --output out/demo
