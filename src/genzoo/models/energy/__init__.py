"""Energy-based models: restricted Boltzmann machines (CD/PCD training, exact or AIS partition functions)
and deep belief nets stacked from them (greedy training, variational bound on log p(x))."""
