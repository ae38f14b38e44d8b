"""The ACD: agents, queues, routing, admission and callbacks (issue 6)."""
