"""Classic generative models with exact likelihoods: finite mixtures and naive Bayes.

Also the Gaussian mixture for continuous vectors (``gmm``), which is not an image model.
"""
