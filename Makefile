# The two entry points the README names. Both install what they need first.
SHARED ?= ../shared

.PHONY: setup build test demo

setup:
	@./scripts/setup.sh

build: setup
	swift build -c release

# The whole test suite, in release mode (numeric tests on real checkpoints need optimized code).
test: setup
	swift test -c release

# The main job on the embedded default: prune stories260K and evaluate it on WikiText-2.
demo: build
	.build/release/llm-prune eval --model $(SHARED)/models/stories260K --dataset wikitext2 \
	  --data-file $(SHARED)/text/wikitext-2-raw/wiki.test.raw
