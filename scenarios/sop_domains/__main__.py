"""``python -m scenarios.sop_domains``: regenerate the SOP domain folders."""

from scenarios.sop_domains import generate

for path in generate():
    print(path)
