"""Audio features: MFCC per video frame, DeepSpeech logits."""
