"""The two kinds of failure talkdata distinguishes.

``UserError`` is bad input from the person running the tool (unknown recipe, missing
directory, bad config key): the CLI prints its message on one line and exits with code 2.

``ClipError`` is a problem with one clip (corrupt media, no face, no audio): the build records
it in ``rejects.parquet`` with its ``reason`` code and goes on with the other clips.
"""

import errno


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and what to do."""


#: write errors that mean "no room": disk full, quota exceeded, file size limit (ulimit -f)
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def disk_full_error(err: OSError, kept: str = "finished clips are kept") -> UserError:
    """``kept``: what the command keeps for the next run (a build: its finished clips)."""
    target = err.filename2 or err.filename  # a copy or a rename: the second path is the one written
    where = f" while writing {target}" if target else ""
    return UserError(f"no space left{where} ({err.strerror}); free space and run the same command again to "
                     f"resume ({kept})")


class ClipError(Exception):
    """One clip cannot become a sample.

    ``reason`` is a short stable code (see ``REASONS``), ``stage`` the per-clip stage that
    raised it, the message a human-readable detail.
    """

    def __init__(self, reason: str, message: str, stage: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.stage = stage

    def __reduce__(self):  # keep reason/stage when pickled across dask workers
        return (type(self), (self.reason, str(self), self.stage))


#: Every reason code a clip can be rejected with, and what it means.
REASONS = {
    "unreadable": "the file cannot be opened as media (empty, truncated header, not a media file)",
    "decode_error": "decoding failed part-way through the file",
    "truncated": "the file ends before the frames its container index lists (cut-off download or copy)",
    "decode_timeout": "processing made no progress for --clip-timeout seconds (a decoder hang); the worker was killed",
    "decoder_crash": "the decoder process crashed on this file",
    "no_video_stream": "the file has no video stream",
    "no_audio_stream": "the file has no audio stream",
    "too_short": "fewer frames than the minimum clip length",
    "no_face": "no face was found in any frame",
    "face_missing": "the face is missing in too many frames, or in a gap too long to interpolate",
    "missing_source": "a file the clip record names does not exist",
    "known_bad": "the corpus documents this file as broken (skip list in the recipe's source module)",
    "unavailable": "the source video cannot be fetched any more (YouTube: removed, private, geo-blocked, HTTP 404/410)",
    "fetch_failed": "fetching the source video failed (network, rate limit, bot check); the next download tries again",
    "tube_out_of_range": "the tube's frame range or chunk does not exist in the downloaded video (TalkingHead-1KH)",
    "failed": "an unexpected error while processing (see the message; retried with --retry-failed)",
    "too_large": "the video's frames are larger than talkdata decodes (over 7680x4320 pixels); scale it down first",
}
