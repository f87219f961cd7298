"""One script per reproduced figure; each entry in README.md states its claim, command, CPU runtime and result."""
