// The llm-prune command line; all logic lives in the library modules.
print("llm-prune")
