"""Image transforms: the evaluation preprocessing (``preprocess``), the named views of the
invariance study (``views``) and the live page's perturbations (``perturbations``)."""
