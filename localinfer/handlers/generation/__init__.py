"""Generation pieces every chat engine reuses: text streaming, stop strings, per-request progress.

Engines (transformers sequential and continuous batching, the llama.cpp plugin) differ in
how they produce token ids; what happens to each id afterwards is written once here.
"""
