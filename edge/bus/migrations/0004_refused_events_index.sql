-- Today's refused device events for the dashboard (edge/dashboard.py) without scanning every outcome kept.
CREATE INDEX event_outcomes_refused_by_time ON event_outcomes(ts) WHERE ok = 0;
