import os
import sys

# Benchmarks import the installed gq; make `benchmarks` importable as a package too.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
