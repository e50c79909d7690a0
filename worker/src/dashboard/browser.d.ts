// What the Worker's program sees of browser.ts (imported as "#dashboard/browser", package.json
// "imports"): its one function, without the DOM library the Worker's types cannot be mixed with.
import type * as Shares from "./shares";

/** The dashboard's script: runs in the page, draws it from this origin's answers. */
export declare function dashboard(lib: typeof Shares): void;
