-- Batch views, one partition per generation. A generation is served only once the
-- 'current' pointer (HBase {prefix}_generations, artifact store CURRENT) names it.

CREATE TABLE IF NOT EXISTS generations (
  generation  STRING,
  created_at  TIMESTAMP,
  data_cutoff TIMESTAMP,
  params      STRING,
  metrics     STRING
)
STORED AS PARQUET;

CREATE TABLE IF NOT EXISTS book_factors (
  book_id  INT,
  features ARRAY<FLOAT>
)
PARTITIONED BY (generation STRING)
STORED AS PARQUET;

CREATE TABLE IF NOT EXISTS user_factors (
  user_id  INT,
  features ARRAY<FLOAT>
)
PARTITIONED BY (generation STRING)
STORED AS PARQUET;

-- Top-N per user, best first, the user's known books excluded.
CREATE TABLE IF NOT EXISTS user_recommendations (
  user_id INT,
  recs    ARRAY<STRUCT<book_id: INT, score: FLOAT>>
)
PARTITIONED BY (generation STRING)
STORED AS PARQUET;

-- Most similar books by cosine over book factors, best first.
CREATE TABLE IF NOT EXISTS similar_books (
  book_id INT,
  similar ARRAY<STRUCT<book_id: INT, score: FLOAT>>
)
PARTITIONED BY (generation STRING)
STORED AS PARQUET;

-- bayes_rating = (prior_count * global_mean + sum of ratings) / (prior_count + ratings_count).
CREATE TABLE IF NOT EXISTS book_popularity (
  book_id       INT,
  ratings_count BIGINT,
  mean_rating   DOUBLE,
  bayes_rating  DOUBLE
)
PARTITIONED BY (generation STRING)
STORED AS PARQUET;

CREATE TABLE IF NOT EXISTS book_metadata (
  book_id        INT,
  title          STRING,
  authors        STRING,
  year           INT,
  average_rating DOUBLE,
  image_url      STRING,
  small_image_url STRING
)
PARTITIONED BY (generation STRING)
STORED AS PARQUET;
