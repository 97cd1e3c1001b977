-- The dashboard's figures of the day (edge/dashboard.py, GET /api/v1/dashboard): today's documents by business
-- date, and today's refused commands, without scanning a year of history.
CREATE INDEX documents_by_business_date ON documents(business_date, type);
CREATE INDEX commands_refused_by_time ON commands(ts) WHERE ok = 0;
