"""TensorFlow engine: train and evaluate the team's model in this process.

Also imports TensorFlow quietly, loads the team's code and reports training progress.
"""
