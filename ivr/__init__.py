"""IVR flows and the flow runner (issue 5)."""
