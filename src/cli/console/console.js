// Shows each <time> in the browser's local zone on hover; the page text stays UTC.
document.querySelectorAll("time[datetime]").forEach(function (t) {
  var d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) { t.title = d.toLocaleString() + " (local)"; }
});
