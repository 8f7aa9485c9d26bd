/**
 * The Patronus web console: a single-page app on the API's own server
 * (src/api/console.ts serves the build). Routes are URL hashes (#/rules), so
 * any static path serves the app and reloads keep the page.
 */
import { render, type ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { resume, signOut, whenSignedOut, type Identity } from './api';
import { stopLive } from './live';
import { SignIn } from './pages/SignIn';
import { Dashboard } from './pages/Dashboard';
import { Rules } from './pages/Rules';

export interface PageProps {
  me: Identity;
}

type Loader = () => Promise<ComponentType<PageProps>>;
const PAGES: { path: string; title: string; page?: ComponentType<PageProps>; load?: Loader }[] = [
  { path: 'dashboard', title: 'Dashboard', page: Dashboard },
  { path: 'rules', title: 'Rules', page: Rules },
  { path: 'config', title: 'Configuration', load: () => import('./pages/Config').then((m) => m.Config) },
  { path: 'services', title: 'Services', load: () => import('./pages/Services').then((m) => m.Services) },
  { path: 'log', title: 'Live log', load: () => import('./pages/Log').then((m) => m.Log) },
  { path: 'sessions', title: 'Sessions', load: () => import('./pages/Sessions').then((m) => m.Sessions) },
];

const loaded = new Map<string, ComponentType<PageProps>>();

function Lazy({ load, name, me }: { load: Loader; name: string; me: Identity }) {
  const [Page, setPage] = useState<ComponentType<PageProps> | undefined>(() => loaded.get(name));
  const [error, setError] = useState<string>();
  useEffect(() => {
    if (Page) return;
    load().then(
      (p) => {
        loaded.set(name, p);
        setPage(() => p);
      },
      (e: Error) => setError(e.message),
    );
  }, [name]);
  if (error) return <p role="alert">Could not load this page: {error}</p>;
  return Page ? <Page me={me} /> : <p aria-busy="true">Loading…</p>;
}

function route(): string {
  return location.hash.replace(/^#\/?/, '').split('?')[0] || 'dashboard';
}

function App() {
  const [me, setMe] = useState<Identity | undefined>();
  const [checked, setChecked] = useState(false);
  const [path, setPath] = useState(route());

  useEffect(() => {
    const onHash = () => setPath(route());
    addEventListener('hashchange', onHash);
    whenSignedOut(() => {
      stopLive();
      setMe(undefined);
    });
    resume().then((id) => {
      setMe(id);
      setChecked(true);
    });
    return () => removeEventListener('hashchange', onHash);
  }, []);

  const [navigated, setNavigated] = useState(false);
  useEffect(() => {
    const p = PAGES.find((x) => x.path === path);
    document.title = me ? `${p?.title ?? 'Not found'} · Patronus` : 'Sign in · Patronus';
    // after a navigation inside the app, focus moves to the new page's heading (keyboard and
    // screen-reader users start reading there); a fresh load starts at the top (the skip link)
    if (navigated) (document.querySelector('main h1') as HTMLElement | null)?.focus();
    else if (me) setNavigated(true);
  }, [path, me]);

  if (!checked) return <p aria-busy="true">Loading…</p>;
  if (!me) return <SignIn onSignedIn={setMe} />;

  const page = PAGES.find((x) => x.path === path);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Patronus</span>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={p.path === path ? 'page' : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          <span data-testid="identity">
            {me.user} <span class={`role role-${me.role}`}>{me.role}</span>
          </span>
          <button
            type="button"
            onClick={async () => {
              stopLive();
              await signOut();
              setMe(undefined);
            }}
          >
            Sign out
          </button>
        </span>
      </header>
      <main id="main">
        {!page ? <h1 tabIndex={-1}>No such page</h1> : page.page ? <page.page me={me} /> : <Lazy key={page.path} name={page.path} load={page.load!} me={me} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
