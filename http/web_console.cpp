#include "http/web_console.hpp"

namespace litedrive {

const char* const web_console_html = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>litedrive SQL console</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
aside{width:15rem;border-right:1px solid #ddd;padding:.8rem;overflow:auto;background:#fafafa}
main{flex:1;padding:.8rem;display:flex;flex-direction:column;gap:.5rem;overflow:auto}
textarea{width:100%;height:9rem;font:13px ui-monospace,monospace;box-sizing:border-box}
input{font:inherit;width:100%;box-sizing:border-box}
table{border-collapse:collapse;font:13px ui-monospace,monospace}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}.err{color:#b00020;white-space:pre-wrap}.muted{color:#777}
button{font:inherit;padding:.3rem 1rem}li{cursor:pointer;list-style:none;padding:.1rem 0}ul{padding:0}
</style></head><body>
<aside><label>Database <input id="db" value="main" title="bare name (notes -> STORE/notes.db) or absolute path"></label>
<p><button id="schema">Schema</button></p><ul id="tables"></ul><h4>History</h4><ul id="hist" class="muted"></ul></aside>
<main><textarea id="sql" spellcheck="false">SELECT name, type FROM sqlite_master ORDER BY name;</textarea>
<div><button id="run">Run (Ctrl+Enter)</button> <span id="status" class="muted"></span></div>
<div id="out"></div></main>
<script>
const $=id=>document.getElementById(id);
const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function cell(v){if(v===null)return '<span class="muted">NULL</span>';if(typeof v==='object')return esc(JSON.stringify(v));return esc(v);}
function render(results){let h='';for(const r of results){if(r.resultSet){const rows=r.resultSet;
if(!rows.length){h+='<p class="muted">no rows</p>';continue;}const cols=Object.keys(rows[0]);
h+='<table><tr>'+cols.map(c=>'<th>'+esc(c)+'</th>').join('')+'</tr>'+rows.map(row=>'<tr>'+cols.map(c=>'<td>'+cell(row[c])+'</td>').join('')+'</tr>').join('')+'</table>';
h+='<p class="muted">'+rows.length+' row(s)</p>';}else{h+='<p>'+r.rowsUpdated+' row(s) changed</p>';}}return h;}
async function run(sql){const t0=performance.now();$('status').textContent='running...';
const isQuery=/^\s*(select|with|pragma|explain|values)/i.test(sql);
const body={transaction:[isQuery?{query:sql}:{statement:sql}]};
try{const r=await fetch('/api/v1/sqlite/db?db='+encodeURIComponent($('db').value),{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body)});
const j=await r.json();const ms=(performance.now()-t0).toFixed(1);
if(!r.ok){$('out').innerHTML='<p class="err">'+esc(j.error.code+': '+j.error.message)+'</p>';$('status').textContent=r.status+' in '+ms+' ms';return;}
$('out').innerHTML=render(j.results);$('status').textContent='ok in '+ms+' ms';
const li=document.createElement('li');li.textContent=sql.slice(0,80);li.onclick=()=>{$('sql').value=sql};$('hist').prepend(li);
}catch(e){$('out').innerHTML='<p class="err">'+esc(e)+'</p>';$('status').textContent='';}}
$('run').onclick=()=>run($('sql').value);
$('sql').onkeydown=e=>{if(e.key==='Enter'&&(e.ctrlKey||e.metaKey)){e.preventDefault();run($('sql').value);}};
$('schema').onclick=async()=>{const sql="SELECT name FROM sqlite_master WHERE type='table' ORDER BY name";
const r=await fetch('/api/v1/sqlite/query?db='+encodeURIComponent($('db').value)+'&sql='+encodeURIComponent(btoa(sql)));const j=await r.json();
$('tables').innerHTML='';if(!r.ok){$('tables').innerHTML='<li class="err">'+esc(j.error.message)+'</li>';return;}
for(const row of j.results[0].resultSet){const li=document.createElement('li');li.textContent=row.name;
li.onclick=()=>{$('sql').value='SELECT * FROM "'+row.name.replace(/"/g,'""')+'" LIMIT 100;';run($('sql').value);};$('tables').append(li);}};
</script></body></html>
)html";

} // namespace litedrive
