/** Sign-in with a user and password, or with an API token. */
import { useState } from 'preact/hooks';
import { signIn, type Identity } from '../api';

export function SignIn({ onSignedIn }: { onSignedIn: (me: Identity) => void }) {
  const [mode, setMode] = useState<'user' | 'token'>('user');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    setBusy(true);
    setError(undefined);
    try {
      const me = await signIn(mode === 'user' ? { user: String(f.get('user')), password: String(f.get('password')) } : { token: String(f.get('token')).trim() });
      if (me.role === 'metrics') throw new Error('this identity may only read /metrics: the console needs the viewer role or above');
      onSignedIn(me);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="signin">
      <h1 tabIndex={-1}>Sign in to Patronus</h1>
      <div role="group" aria-label="Sign in with" class="tabs">
        <button type="button" aria-pressed={mode === 'user'} onClick={() => setMode('user')}>
          User and password
        </button>
        <button type="button" aria-pressed={mode === 'token'} onClick={() => setMode('token')}>
          API token
        </button>
      </div>
      <form onSubmit={submit}>
        {mode === 'user' ? (
          <>
            <label for="user">User</label>
            <input id="user" name="user" autocomplete="username" required />
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required />
          </>
        ) : (
          <>
            <label for="token">API token</label>
            <input id="token" name="token" type="password" autocomplete="off" required />
          </>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
