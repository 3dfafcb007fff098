"""Audio features, computed from the PCM16 samples stored in audio.wav: MFCC per video frame
(``mfcc``), DeepSpeech v0.1.0 logits at 50 Hz (``deepspeech``: feature math and model backends);
``pcm`` reads the stored samples. Imports numpy, python_speech_features and the model runtimes;
nothing else of talkdata but ``errors``."""
