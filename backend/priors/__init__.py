"""Learned priors: Gaussian mixtures over body and hand poses, fitted to motion capture
(``backend priors train``) and shipped as data, that tell the tracker which poses people take."""
