"""Admin control of training and serving, over REST."""
