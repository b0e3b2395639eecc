// Entry point of the web UI: defines <wl-app> (index.html renders it).
import './components/app.ts';
