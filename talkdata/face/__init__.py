"""Face processing: detection, tracking, 68-point landmarks, alignment, pose, shape model."""
