"""The streaming side of churn-stream: the Faust worker and everything an event meets on its way to a score."""
