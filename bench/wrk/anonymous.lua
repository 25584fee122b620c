-- wrk script: POST an anonymous reader's 10 to 20 random ratings (folded in exactly in the request).
-- BOOKS_FILE: one book id per line; WRK_SCRIPTS: this folder. Everything else, the report
-- included, is bench/wrk/known.lua's, loaded first.
dofile(os.getenv("WRK_SCRIPTS") .. "/known.lua")
local books = {}
for line in io.lines(os.getenv("BOOKS_FILE")) do books[#books + 1] = line end
wrk.headers["Content-Type"] = "application/json"

function request()
  local ratings = {}
  for i = 1, math.random(10, 20) do
    ratings[i] = string.format('{"book_id": %s, "rating": %d}', books[math.random(#books)], math.random(1, 5))
  end
  return wrk.format("POST", "/api/v1/recommendations", nil, '{"ratings": [' .. table.concat(ratings, ", ") .. '], "n": 10}')
end
