"""Energy-based models: restricted Boltzmann machines (CD/PCD training, exact or AIS partition functions)."""
