"""Our own Lava processes. Each lives in its own folder because Lava's
compiler executes every .py file beside a Process's module while it looks
for process models."""
