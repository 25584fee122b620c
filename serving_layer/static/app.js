// Covers fall back to a local placeholder; "Recommended for you" refreshes every two seconds.
document.addEventListener("error", (e) => {
  const img = e.target;
  if (img.tagName === "IMG" && img.dataset.fallback && img.src !== img.dataset.fallback) img.src = img.dataset.fallback;
}, true);

function card(item, recs) {
  const a = document.createElement("a");
  a.className = "card";
  a.href = recs.dataset.bookUrl.replace(/0$/, String(item.book_id));
  const img = document.createElement("img");
  img.src = item.cover_url || recs.dataset.placeholder;
  img.dataset.fallback = recs.dataset.placeholder;
  img.alt = "";
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title || ("Book " + item.book_id);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = [item.authors, item.year, item.average_rating ? "★ " + item.average_rating.toFixed(2) : null]
    .filter(Boolean).join(" · ");
  const why = document.createElement("span");
  why.className = "reason";
  why.textContent = item.reason || "";
  a.append(img, title, meta, why);
  return a;
}

async function refresh(recs, status) {
  const reader = recs.dataset.reader;
  const ratings = JSON.parse(recs.dataset.ratings || "[]");
  let response;
  if (reader) {
    response = await fetch(`/api/v1/users/${encodeURIComponent(reader)}/recommendations?n=12`,
                           {headers: {Authorization: "Bearer " + recs.dataset.token}});
  } else if (ratings.length) {
    response = await fetch("/api/v1/recommendations", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({ratings, n: 12}),
    });
  } else {
    status.textContent = "Rate a few books (search, open a book, click the stars) to get recommendations.";
    return;
  }
  const body = await response.json();
  if (!response.ok) { status.textContent = body.error || "Recommendations are unavailable right now."; return; }
  const sources = {speed: "updated just now from your latest ratings", batch: "from your reading history",
                   popular: "popular books (we don't know your taste yet)", "fold-in": "from the books you rated"};
  status.textContent = body.notice || ("Recommendations " + (sources[body.source] || body.source) + ".");
  recs.dataset.source = body.source;
  recs.replaceChildren(...body.items.map((item) => card(item, recs)));
}

document.addEventListener("DOMContentLoaded", () => {
  const recs = document.getElementById("recs");
  if (!recs) return;
  const status = document.getElementById("status");
  const tick = () => refresh(recs, status).catch(() => { status.textContent = "Recommendations are unavailable right now."; });
  tick();
  if (recs.dataset.reader) setInterval(tick, 2000);
});
