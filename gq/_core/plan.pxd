# Planning new jobs: their records and index rows, for one batch of submissions.
