"""Reports: loading results from disk (``load``), tables, figures and the HTML page."""
