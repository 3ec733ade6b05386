"""The Ray layer: the only package that imports Ray.

Ray Train runs one search trial (trial) or a data-parallel retraining (retrain); Ray Tune
runs sweeps of trials (definition, packing, sweep, storing); reproduce starts what the
paper's tables lack; monitoring sets the trials' Ray metrics. Everything here wraps the core
through its hooks.
"""
