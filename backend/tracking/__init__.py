"""The tracker: batched optimization of body-model parameters to 2D keypoints over a clip."""
