-- Cover traffic per line (PROTOCOL §10.7): this station's own choice for what it sends on the
-- line's circuits (`backchannel line cover NAME --rate R --flash slot|immediate`). A NULL column
-- follows the station's [station] cover_rate / cover_flash. (009 is the mailbox rotation's.)
CREATE TABLE line_cover (
    line_id     BLOB PRIMARY KEY REFERENCES lines (line_id) ON DELETE CASCADE,
    rate        REAL,
    flash       TEXT
);
