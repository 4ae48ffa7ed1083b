"""Classic generative models with exact likelihoods: finite mixtures, naive Bayes, hidden Markov models.

Also the Gaussian mixture for continuous vectors (``gmm``), which is not an image model.
"""
