"""``python -m bench``: every runtime benchmark, then the docs section."""

from bench.run_all import main

main()
