-- The master dataset: immutable, append-only facts. Layouts live here and only here.

-- Every rating ever received: imported files (source = 'import') and Kafka (source = 'stream').
-- A re-rating is a new row; readers of the table take the latest event per (user_id, book_id).
-- seq orders rows within one origin (file row order for imports, Kafka offset for the stream).
-- writer: who posted a streamed rating (reader:<id> or key:<name>, from the API's token); null
-- for imports and for events a trusted producer wrote to Kafka directly. Added after the first
-- release: readnext/master_dataset.py `ensure` adds it to an older table.
CREATE TABLE IF NOT EXISTS ratings (
  user_id     INT,
  book_id     INT,
  rating      TINYINT,
  event_time  TIMESTAMP,
  seq         BIGINT,
  origin      STRING,
  writer      STRING
)
PARTITIONED BY (source STRING, event_date DATE)
STORED AS PARQUET;

-- Rows refused by validation, with the reason: nothing is dropped silently.
CREATE TABLE IF NOT EXISTS rejects (
  origin      STRING,
  seq         BIGINT,
  raw         STRING,
  reason      STRING,
  rejected_at TIMESTAMP
)
PARTITIONED BY (dataset STRING)
STORED AS PARQUET;

-- Book metadata (books.csv): a snapshot, replaced by each import of the file.
CREATE TABLE IF NOT EXISTS books (
  book_id                   INT,
  goodreads_book_id         INT,
  work_id                   INT,
  isbn                      STRING,
  authors                   STRING,
  original_publication_year INT,
  original_title            STRING,
  title                     STRING,
  language_code             STRING,
  average_rating            DOUBLE,
  ratings_count             BIGINT,
  image_url                 STRING,
  small_image_url           STRING
)
STORED AS PARQUET;

CREATE TABLE IF NOT EXISTS tags (
  tag_id   INT,
  tag_name STRING
)
STORED AS PARQUET;

CREATE TABLE IF NOT EXISTS book_tags (
  goodreads_book_id INT,
  tag_id            INT,
  count             INT
)
STORED AS PARQUET;

CREATE TABLE IF NOT EXISTS to_read (
  user_id INT,
  book_id INT
)
STORED AS PARQUET;
