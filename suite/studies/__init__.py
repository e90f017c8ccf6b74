"""Studies: convergence on test functions, gradient statistics of deep networks."""
