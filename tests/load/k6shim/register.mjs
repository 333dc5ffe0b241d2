// Registers the resolve/load hooks that map k6's built-in modules to the stand-ins in modules/.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
