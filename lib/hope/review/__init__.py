"""Review of saved labels: an annotator's label is submitted, a reviewer approves or rejects it (with a comment).

Wiring into the server::

    book = ReviewBook(paths.review / "review.sqlite")
    datastore = OrthancDatastore(..., label_gate=book.is_approved)   # only approved SEGs count
    strategy = RandomStrategy(leases, tasks, review=book)            # rejected series go back to their annotator
    book.submit(seg_sop_uid, series_uid, study_uid, annotator)      # each time a final label is saved

Its routes (``/hope/review``) are in :mod:`hope.api.review`.
"""

from hope.review.book import Decision, ReviewBook, ReviewState, SeriesReview, Submission, series_state

__all__ = ["Decision", "ReviewBook", "ReviewState", "SeriesReview", "Submission", "series_state"]
