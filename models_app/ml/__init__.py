"""Pure machine learning for Flywheel: numpy, scipy, scikit-learn and transformers only, never Django."""
