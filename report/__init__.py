"""Report: results.json, the terminal summary and the HTML report."""
