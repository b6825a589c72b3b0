"""``lit-distill compare``: run arms x seeds through the normal ``fit`` path and report paired differences.

runner.py runs (and caches) the fits, stats.py holds the pure statistics (paired bootstrap confidence
intervals), report.py reads the finished runs back and writes the markdown table, the JSON and the curves.
"""
